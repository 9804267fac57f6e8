"""The ``evapp`` command line: thin commands that parse options and call one library function each.

``evapp.cli.main`` holds the group, the error policy and the entry point; the commands live by subject in
``stream`` (replay, live, eval-stream), ``models`` (models, export, train, package, eval), ``data`` (info,
cameras, simulate) and ``bench``. Nothing outside this package imports it.
"""
