"""GET /healthz: 200 with {"status": "ok", "stage": ..., "database": "ok"} once the database answers,
503 otherwise. Runs as the first middleware, so it needs no allowed host, session or migration."""
import logging

from django.conf import settings
from django.db import connection
from django.http import JsonResponse

HEALTH_PATH = "/healthz"
logger = logging.getLogger(__name__)


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info.rstrip("/") != HEALTH_PATH or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        body = {"status": "ok", "stage": settings.STAGE, "database": "ok"}
        status = 200
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except Exception as error:  # any failure to reach the database
            logger.warning("health check: database unavailable: %s", error)
            # Drop the broken connection so the next check reconnects.
            connection.close()
            body.update(status="unavailable", database="unavailable")
            if settings.DEBUG:
                body["error"] = str(error).strip()
            status = 503
        response = JsonResponse(body, status=status)
        response["Cache-Control"] = "no-store"
        # Logged above already; keeps django.request from logging every failed probe as an error.
        response._has_been_logged = True
        return response
