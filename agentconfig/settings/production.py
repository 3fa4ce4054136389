"""Production: SECRET_KEY and ALLOWED_HOSTS are required, DEBUG is off, HTTPS is assumed.

Run behind a TLS-terminating proxy that sets X-Forwarded-Proto; set TRUSTED_PROXY_COUNT=1
when it also appends the client's address to X-Forwarded-For (sign-in lockouts are then
per client address, not per proxy: base.py, AGENTCONFIG_TRUSTED_PROXY_COUNT).
"""

from agentconfig.settings.base import *  # noqa: F403
from agentconfig.settings.base import env

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY")  # no default: a missing key must stop the process
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# Load balancers probe /healthz over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
# Cookies: HTTPS only, out of reach of page scripts, not sent on cross-site sub-requests
# (Lax: a link from chat or mail still opens the signed-in page). The __Host- prefix
# makes browsers refuse the cookie unless it is Secure, for this host only, on path /.
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_NAME = "__Host-sessionid"
CSRF_COOKIE_SECURE = True
CSRF_COOKIE_HTTPONLY = True  # the admin sends the token in forms, no script reads it
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_NAME = "__Host-csrftoken"
# One working day of sign-in, then sign in again (a stolen session ages out).
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=60 * 60 * 8)
X_FRAME_OPTIONS = "DENY"

# Passwords of people who can deploy to production: at least 12 characters, not common,
# not all digits, not like the username (the admin's user forms and changepassword check).
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
