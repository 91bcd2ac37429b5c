"""Organization portability: export everything an organization holds, and import it elsewhere.

Plain Python over the platform's stores (no Dagster): `export_organization` writes a ZIP with a
manifest of sha256 sums, `import_organization` verifies it and loads it into another instance
all-or-nothing, `download` serves a 7-day link. The Dagster job (jobs/portability.py) and the
CLI (cli_portability.py) call these functions.
"""

from encaptio_data.portability.archive import ArchiveRefusedError, verify_archive
from encaptio_data.portability.export import ExportResult, export_organization
from encaptio_data.portability.importer import ImportResult, OrganizationExistsError, import_organization
from encaptio_data.portability.links import ExpiredLinkError, download

__all__ = ["ArchiveRefusedError", "ExpiredLinkError", "ExportResult", "ImportResult", "OrganizationExistsError",
           "download", "export_organization", "import_organization", "verify_archive"]
