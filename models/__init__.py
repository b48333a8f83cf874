"""Model handles and loading: MoViNet base/stream export and its Beam ModelHandler."""
