"""Serves media files under MEDIA_SERVE_PATH (/media/), also with DEBUG off: straight from disk for
file storage, streamed from the bucket for S3 storage without a public URL."""
import mimetypes

from botocore.exceptions import ClientError
from django.conf import settings
from django.core.files.storage import default_storage
from django.http import Http404, StreamingHttpResponse
from django.utils.http import http_date
from django.views import static


def _secure(response):
    # Uploaded files never run script in the browser, whatever their type.
    response["Content-Security-Policy"] = "sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _unsafe(path):
    """True for names that could escape the storage prefix."""
    return "\\" in path or "\x00" in path or any(part in ("", ".", "..") for part in path.split("/"))


def serve(request, path):
    if settings.DEFAULT_FILE_STORAGE.endswith("FileSystemStorage"):
        # static.serve keeps to MEDIA_ROOT and answers If-Modified-Since.
        response = static.serve(request, path, document_root=settings.MEDIA_ROOT)
        response["Cache-Control"] = "public, max-age=3600"
        return _secure(response)

    if _unsafe(path):
        raise Http404("no such file")
    key = default_storage._normalize_name(path)
    try:
        obj = default_storage.bucket.Object(key).get()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            raise Http404("no such file")
        raise
    content_type = obj.get("ContentType") or mimetypes.guess_type(path)[0] or "application/octet-stream"
    body = obj["Body"]
    if request.method == "HEAD":
        body.close()
        response = StreamingHttpResponse([], content_type=content_type)
    else:
        response = StreamingHttpResponse(body.iter_chunks(64 * 1024), content_type=content_type)
    response["Content-Length"] = str(obj["ContentLength"])
    if obj.get("LastModified"):
        response["Last-Modified"] = http_date(obj["LastModified"].timestamp())
    if obj.get("ETag"):
        response["ETag"] = obj["ETag"]
    response["Cache-Control"] = "public, max-age=3600"
    return _secure(response)
