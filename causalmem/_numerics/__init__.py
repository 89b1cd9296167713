"""Pure numerical kernels: arrays in, frozen dataclasses out. No pandas, no ``self`` state."""
