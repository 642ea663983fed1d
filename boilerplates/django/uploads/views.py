import logging

from django.conf import settings
from django.db import DatabaseError, transaction
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from .forms import UploadForm
from .models import Upload

logger = logging.getLogger(__name__)


def _page(request, form, status=200):
    uploads = None
    notice = None
    try:
        uploads = list(Upload.objects.all()[:100])
    except DatabaseError as error:
        if "does not exist" in str(error):
            notice = "The uploads table does not exist yet: run the release command (python3 manage.py migrate)."
        else:
            notice = "The database is not available: %s" % error
    context = {
        "form": form,
        "uploads": uploads,
        "notice": notice,
        "storage_description": settings.MEDIA_STORAGE_DESCRIPTION,
        "max_upload_size": settings.MAX_UPLOAD_SIZE,
    }
    return render(request, "uploads/index.html", context, status=status)


def index(request):
    return _page(request, UploadForm())


@require_POST
def upload(request):
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _page(request, form, status=400)
    f = form.cleaned_data["file"]
    item = Upload(
        original_name=f.name[:255] or "file",
        content_type=(f.content_type or "application/octet-stream")[:255],
        size=f.size,
    )
    # Store the file, then record it; a failed insert removes the stored file again.
    item.file.save(f.name, f, save=False)
    try:
        with transaction.atomic():
            item.save()
    except Exception:
        item.file.storage.delete(item.file.name)
        raise
    logger.info("upload: stored %s (%d bytes)", item.file.name, item.size)
    response = redirect("index")
    response.status_code = 303
    return response
