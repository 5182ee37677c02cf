"""Client code shared by the scripts; never imports daemon/ or services/."""
