"""Models: safe loading, encryption and splitting, registration and the prediction loader.

`creditml.models.crypto`, `.schema` and `.records` import no ML library; `.safe_loading`,
`.registration` and `.loader` need scikit-learn/joblib from the ML layer.
"""
