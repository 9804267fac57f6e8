from evapp.cli.main import run

run()
