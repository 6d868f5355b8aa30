"""Learned grid stepper: data generation, model, training, guard, hybrid stepping and evaluation."""
