"""The user-facing part of browser login: pages, cookies, and their handlers.

Kept apart from the protocol endpoints (``issuer.http.authorize``, the token
endpoint): these are the pages a person sees: login, consent, sign-out.
"""
