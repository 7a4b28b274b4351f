"""Use cases: async, no aiohttp imports; the HTTP layer and the CLI both call these."""
