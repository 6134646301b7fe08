"""Load scenarios. Each is ``async def run(args, cfg) -> dict`` returning one JSON-able result
that always says whether every message was accounted for (``complete``, ``lost``,
``duplicated``) next to the speed figures."""
