"""Media storage settings from DEFAULT_STORAGE_DSN.

    file:///data/media/?url=/media/
        files in a directory, served by this app under /media/ (also with DEBUG off)
    s3://KEY:SECRET@BUCKET.HOST[:PORT]/PREFIX/?url=URL&region=REGION&scheme=http|https
        objects in an S3 bucket (path-style addressing), every key prefixed with PREFIX

A file's public URL is the ``url`` parameter + its name; without ``url`` the app serves (proxies)
the file itself under its media path.
"""
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_MEDIA_PATH = "/media/"


def _with_slash(value):
    return value if value.endswith("/") else value + "/"


def storage_settings(dsn):
    """Django settings (a dict) for the storage DSN."""
    parts = urlsplit(dsn)
    params = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    url = params.get("url") or ""
    # The path this app serves media under: the url parameter when it is a path, else /media/.
    serve_path = _with_slash(url) if url.startswith("/") else DEFAULT_MEDIA_PATH

    if parts.scheme == "file":
        return {
            "DEFAULT_FILE_STORAGE": "django.core.files.storage.FileSystemStorage",
            "MEDIA_ROOT": unquote(parts.path) or "/data/media/",
            "MEDIA_URL": _with_slash(url) if url else serve_path,
            "MEDIA_SERVE_PATH": serve_path,
            "MEDIA_STORAGE_DESCRIPTION": "files in %s" % (unquote(parts.path) or "/data/media/"),
        }

    if parts.scheme == "s3":
        # netloc is KEY:SECRET@BUCKET.HOST[:PORT]; the bucket is the host's first label.
        credentials, _, hostport = parts.netloc.rpartition("@")
        key, _, secret = credentials.partition(":")
        host, _, port = hostport.partition(":")
        bucket, dot, endpoint_host = host.partition(".")
        if not bucket or not dot or not endpoint_host:
            raise ValueError(
                "DEFAULT_STORAGE_DSN: an s3:// DSN needs BUCKET.HOST "
                "(e.g. s3://KEY:SECRET@media.s3.example.com/prefix/)"
            )
        scheme = params.get("scheme", "https").lower()
        if scheme not in ("http", "https"):
            raise ValueError('DEFAULT_STORAGE_DSN: unsupported scheme "%s"' % scheme)
        endpoint = "%s://%s%s" % (scheme, endpoint_host, ":" + port if port else "")
        prefix = unquote(parts.path).strip("/")
        return {
            "DEFAULT_FILE_STORAGE": "config.storage.MediaS3Storage",
            "MEDIA_ROOT": "",
            "MEDIA_URL": _with_slash(url) if url else serve_path,
            "MEDIA_SERVE_PATH": serve_path,
            "MEDIA_PUBLIC_BASE_URL": _with_slash(url) if url else None,
            "MEDIA_STORAGE_DESCRIPTION": "S3 bucket %s at %s%s"
            % (bucket, endpoint, ", prefix %s/" % prefix if prefix else ""),
            "AWS_ACCESS_KEY_ID": unquote(key),
            "AWS_SECRET_ACCESS_KEY": unquote(secret),
            "AWS_STORAGE_BUCKET_NAME": bucket,
            "AWS_S3_ENDPOINT_URL": endpoint,
            "AWS_S3_REGION_NAME": params.get("region", "us-east-1"),
            "AWS_S3_ADDRESSING_STYLE": "path",
            "AWS_S3_SIGNATURE_VERSION": "s3v4",
            "AWS_LOCATION": prefix,
            "AWS_DEFAULT_ACL": None,
            "AWS_S3_FILE_OVERWRITE": False,
            "AWS_QUERYSTRING_AUTH": False,
        }

    raise ValueError('DEFAULT_STORAGE_DSN: unsupported scheme "%s" (use file:// or s3://)' % parts.scheme)
