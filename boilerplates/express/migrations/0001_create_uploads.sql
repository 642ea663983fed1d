-- Uploaded media files: the file itself lives in DEFAULT_STORAGE_DSN under `name`.
CREATE TABLE uploads (
  id            bigserial PRIMARY KEY,
  name          text NOT NULL UNIQUE,
  original_name text NOT NULL,
  content_type  text NOT NULL,
  size          bigint NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);
