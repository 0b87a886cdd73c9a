"""The admin UI: SQLAdmin over our models, our own pages, login and CSRF defences."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import FastAPI
from sqladmin import Admin
from sqlalchemy.orm import sessionmaker
from starlette.middleware.sessions import SessionMiddleware

from app.config import Settings
from app.db.session import get_engine
from app.portal import (
    auth,
    campaign_pages,
    dashboard,
    dead_letters,
    delivery_retry,
    outbox,
    schedule_views,
    session_guard,
    suppression_pages,
    templates_views,
    user_pages,
)
from app.portal.action_limit import ActionLimit
from app.portal.admin.backend import PortalAuthBackend
from app.portal.admin.dead_letter_views import DeadLetterAdmin
from app.portal.admin.mail_views import DeliveryAdmin, NotificationAdmin
from app.portal.admin.menu import LinkMenu, category
from app.portal.admin.views import AdminUserAdmin, AuditLogAdmin, TemplateAdmin
from app.portal.audit import AuditMiddleware
from app.portal.csrf import OriginCheckMiddleware, origin_of
from app.portal.pages import TEMPLATES_DIR

SESSION_COOKIE = "notify_portal"
# Public routes that take cross-site POSTs by design (providers, mailbox one-click unsubscribe),
# or whose POST a signed token in the form authorizes (the recipients' preference page).
CSRF_EXEMPT = ("/webhooks", "/unsubscribe", "/preferences")


def session_key(settings: Settings) -> str:
    """The session signing key, derived so it never equals the unsubscribe-token key."""
    return hmac.new(
        settings.secret_key.get_secret_value().encode(), b"portal-session", hashlib.sha256
    ).hexdigest()


def install_admin(app: FastAPI, settings: Settings) -> Admin:
    """Mount the admin UI at /admin with our pages, login and the CSRF/session middleware."""
    pages = (
        auth,
        dashboard,
        campaign_pages,
        templates_views,
        schedule_views,
        outbox,
        dead_letters,
        user_pages,
        suppression_pages,
    )
    for module in (*pages, delivery_retry):
        app.include_router(module.router)  # before the /admin mount, so these routes win
    admin = Admin(
        app,
        session_maker=sessionmaker(bind=get_engine(settings.database_url)),
        base_url="/admin",
        title="notify admin",
        templates_dir=str(TEMPLATES_DIR),
        authentication_backend=PortalAuthBackend(),
    )
    _add_views(admin, settings)
    app.state.admin = admin
    _add_middleware(app, settings)
    return admin


def _add_views(admin: Admin, settings: Settings) -> None:
    """SQLAdmin's views and our own pages, in the sidebar's order."""
    admin._menu.add(LinkMenu("Users", "/admin/users", "fa-solid fa-user"))
    admin._menu.add(LinkMenu("Mailings", "/admin/mailings", "fa-solid fa-envelopes-bulk"))
    for view in (TemplateAdmin, NotificationAdmin, DeliveryAdmin, DeadLetterAdmin):
        admin.add_view(view)
    admin._menu.add(LinkMenu("Periodic tasks", "/admin/schedule", "fa-solid fa-clock"))
    admin.add_view(AdminUserAdmin)
    admin.add_view(AuditLogAdmin)
    admin._menu.add(LinkMenu("Suppressions", "/admin/suppressions", "fa-solid fa-ban"))
    admin._menu.add(LinkMenu("Outbox", "/admin/outbox", "fa-solid fa-inbox"))
    admin._menu.add(
        category(
            "Monitoring",
            "fa-solid fa-chart-line",
            LinkMenu("Flower (Celery)", settings.flower_url),
            LinkMenu("Faust web view", settings.faust_web_url),
        )
    )


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """The guards every request passes (and the limits they keep), one set per portal app."""
    # Starlette runs the middleware added last first: origin check, session, login, audit, role.
    app.state.session_check = session_guard.SessionCheck()
    app.state.login_guard = auth.LoginGuard(settings)
    app.state.test_send_limit = ActionLimit(
        "test_send", settings.portal_test_send_limits, settings.portal_login_limits_storage
    )
    app.add_middleware(session_guard.RoleRequiredMiddleware)
    app.add_middleware(AuditMiddleware)
    app.add_middleware(
        session_guard.LoginRequiredMiddleware,
        check=app.state.session_check,
        lifetime_s=settings.portal_session_max_age_s,
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_key(settings),
        session_cookie=SESSION_COOKIE,
        max_age=settings.portal_session_max_age_s,
        same_site="lax",
        https_only=settings.secure_cookies,
    )
    app.add_middleware(
        OriginCheckMiddleware,
        trusted_origins=frozenset({origin_of(settings.public_base_url)}),
        exempt=CSRF_EXEMPT,
    )
