"""The operators' side of the admin API: an HTTP client (`client`) and the
`dataface-billing admin` command built on it (`cli`). httpx only; nothing of the server."""
