"""ftpexport: deliver processed vehicle photos to DMS servers over FTP, FTPS and SFTP."""

__version__ = "0.1.0"
