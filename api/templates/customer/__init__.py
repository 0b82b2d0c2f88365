"""The pages Stripe returns customers to (`api.routes.customer_pages`)."""
