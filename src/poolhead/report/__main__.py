from poolhead.report import main

main()
