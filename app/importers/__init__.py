"""``runwarden import crontab|supervisord FILE``: another tool's file as a runwarden.toml.

Each importer reads the file into plain :class:`~app.importers.output.Entry` values and
:func:`~app.importers.output.render` writes them as TOML; what runwarden cannot express is
kept as a comment next to where it applied.
"""
