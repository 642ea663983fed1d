"""The S3 media storage: django-storages' S3Boto3Storage with this platform's URL rule."""
from urllib.parse import quote

from django.conf import settings
from storages.backends.s3boto3 import S3Boto3Storage


class MediaS3Storage(S3Boto3Storage):
    """Files in the DSN's bucket under its prefix (AWS_LOCATION).

    url(): the DSN's ``url`` parameter + the file's name when given, else the app's own media path,
    where config.media.serve streams the object from S3.
    """

    def url(self, name, parameters=None, expire=None, http_method=None):
        name = name.lstrip("/")
        base = getattr(settings, "MEDIA_PUBLIC_BASE_URL", None) or settings.MEDIA_SERVE_PATH
        return base + quote(name)
