from django.conf import settings
from django.contrib import admin
from django.urls import path, re_path

from . import media
from uploads import views

urlpatterns = [
    path("", views.index, name="index"),
    # POST /upload/ (and /upload, as in the other boilerplates).
    re_path(r"^upload/?$", views.upload, name="upload"),
    path("admin/", admin.site.urls),
    # Media is served by the app itself (file storage, or S3 without a public URL), also with DEBUG off.
    re_path(r"^%s(?P<path>.+)$" % settings.MEDIA_SERVE_PATH.lstrip("/"), media.serve, name="media"),
]
