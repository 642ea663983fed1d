from django.db import models


class Upload(models.Model):
    """An uploaded media file; the file itself lives in DEFAULT_STORAGE_DSN's storage."""

    file = models.FileField(upload_to="uploads/", max_length=255)
    original_name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255)
    size = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.original_name
