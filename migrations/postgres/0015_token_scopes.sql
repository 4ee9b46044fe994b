-- Producer tokens scoped to named datasets (issue 11, least privilege): the JSON
-- {"datasets": [dataset ids], "list_restricted": bool}. NULL on tokens created before scopes
-- existed: they keep every dataset and the restricted list until revoked and re-issued.
ALTER TABLE api_tokens ADD COLUMN scope TEXT;
