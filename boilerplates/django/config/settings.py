"""Django settings, read from the environment contract shared by local, test and live:
STAGE, DEBUG, PORT, DATABASE_URL, SECRET_KEY, DOMAIN, SITE_URL, DEFAULT_STORAGE_DSN.
"""
import os
from pathlib import Path
from urllib.parse import urlsplit

import django
import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .storage_dsn import storage_settings

BASE_DIR = Path(__file__).resolve().parent.parent


def env_flag(name, default=False):
    value = os.environ.get(name, "")
    if value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


STAGE = os.environ.get("STAGE", "local")
DEBUG = env_flag("DEBUG")
DOMAIN = os.environ.get("DOMAIN", "localhost")
SITE_URL = os.environ.get("SITE_URL", "http://%s" % DOMAIN)

# The app's name: APP_NAME if set, else the first label of DOMAIN without the "<stage>-" prefix
# the platform puts in front of it (test-shop.example.com -> shop).
APP_NAME = os.environ.get("APP_NAME") or DOMAIN.split(".")[0] or "app"
if not os.environ.get("APP_NAME") and APP_NAME.startswith(STAGE + "-"):
    APP_NAME = APP_NAME[len(STAGE) + 1:]

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if STAGE in ("test", "live"):
        raise ImproperlyConfigured("SECRET_KEY is not set")
    # Only for building the image (collectstatic) and running outside divio.
    SECRET_KEY = "insecure-local-only-key"

# --- hosts and CSRF -------------------------------------------------------------------------------
ALLOWED_HOSTS = [DOMAIN, "localhost", "127.0.0.1", "[::1]", ".localhost"]
ALLOWED_HOSTS += [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()]

_site = urlsplit(SITE_URL)
if django.VERSION >= (4, 0):
    # Django 4+: origins with scheme.
    CSRF_TRUSTED_ORIGINS = ["%s://%s" % (_site.scheme, _site.netloc)] if _site.netloc else []
    CSRF_TRUSTED_ORIGINS += ["https://%s" % DOMAIN, "http://%s" % DOMAIN]
else:
    # Django 3.2 (Debian bookworm): host names, optionally with a port.
    CSRF_TRUSTED_ORIGINS = [_site.netloc] if _site.netloc else []
    CSRF_TRUSTED_ORIGINS += [DOMAIN]

# The platform's router terminates TLS and says so in X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if _site.scheme == "https":
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- application ----------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "uploads",
]

MIDDLEWARE = [
    # First: answers /healthz before host validation and everything else.
    "config.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.debug",
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "config.context_processors.site",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", "postgres://postgres@localhost:5432/postgres"),
        conn_max_age=60,
    )
}
# Fail fast when the database does not answer (health check, release command).
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 5

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_L10N = True
USE_TZ = True

# --- static files (collected at image build time, served by whitenoise) ---------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_STORAGE = "whitenoise.storage.CompressedManifestStaticFilesStorage"

# --- media (DEFAULT_STORAGE_DSN) ------------------------------------------------------------------
DEFAULT_STORAGE_DSN = os.environ.get("DEFAULT_STORAGE_DSN", "file:///data/media/?url=/media/")
globals().update(storage_settings(DEFAULT_STORAGE_DSN))
MAX_UPLOAD_SIZE = int(float(os.environ.get("MAX_UPLOAD_MB", "25")) * 1024 * 1024)

# --- logging: everything to the container's output ------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # Request logging is the server's job (runserver, gunicorn --access-logfile).
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "botocore": {"level": "WARNING"},
        "boto3": {"level": "WARNING"},
        "s3transfer": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}
