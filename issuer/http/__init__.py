"""The aiohttp edge: parse the request, call a service, render the result."""
