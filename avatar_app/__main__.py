from avatar_app.commands.cli import main

raise SystemExit(main())
