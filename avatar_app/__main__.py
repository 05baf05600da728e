from avatar_app.cli import main

raise SystemExit(main())
