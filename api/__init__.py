"""qvd-api: the administration REST API (FastAPI on uvicorn, TLS), a front end over the
domain layer (qvd.db.ops) like qvd-admin: /api/v1/<resources> with the CLI's filters,
ordering and pages, actions as sub-resources, bearer tokens for administrators, RFC 9457
problem details; and /api, QVD 4.2's action form."""
