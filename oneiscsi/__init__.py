"""one-iscsi: the iSCSI datastore driver of OpenNebula as one command-line tool."""

__version__ = "0.1.0"
