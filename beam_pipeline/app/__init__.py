"""``videolabel app``: the Streamlit server (``serve``) and the page it runs (``page``)."""
