"""Quality, brand and safety scorers that fill each image's ScoreCard."""
