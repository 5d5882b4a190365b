"""A minimal Django project whose /boom/ view raises: ``alerting.contrib.django`` turns that into an alert email."""
