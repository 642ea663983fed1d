import django
from django.conf import settings


def site(request):
    """The environment, for every template."""
    return {
        "app_name": settings.APP_NAME,
        "stage": settings.STAGE,
        "site_url": settings.SITE_URL,
        "debug_mode": settings.DEBUG,
        "django_version": django.get_version(),
    }
