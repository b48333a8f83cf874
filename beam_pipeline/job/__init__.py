"""The labelling job: start-up checks, model resolution, options, the graph, resume, and the driver
that runs it (``launcher.run_job``)."""
