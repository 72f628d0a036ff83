"""The clinic database: users, roles, uploads, the audit log, data sets.

See :mod:`core.store.clinic` for the access rules and :class:`ClinicStore` for its parts.
"""
from core.store.access import DatasetInfo
from core.store.clinic import ClinicStore
from core.store.demo_accounts import DEMO_DATASET, DEMO_PASSWORD
from core.store.engine import alembic_config, dashboard_url, default_url, demo_url, normalise_url, open_engine
from core.store.errors import AccessDenied, NoSuchDataset, NoSuchPatient, StoreBusy, StoreUnwritable, UploadConflict
from core.store.schema import metadata
from core.store.uploads import UploadPreview, UploadResult
from core.store.users import Role, User

__all__ = ["AccessDenied", "ClinicStore", "DEMO_DATASET", "DEMO_PASSWORD", "DatasetInfo", "NoSuchDataset",
           "NoSuchPatient", "Role", "StoreBusy", "StoreUnwritable", "UploadConflict", "UploadPreview", "UploadResult",
           "User",
           "alembic_config", "dashboard_url", "default_url", "demo_url", "metadata", "normalise_url", "open_engine"]
