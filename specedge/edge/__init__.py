"""The edge device: speculative model, misspeculation detector, runtime, cloud client."""
