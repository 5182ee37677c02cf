"""Pure domain logic: storyboard, plan, states, prompts, paths, pricing. No I/O."""
