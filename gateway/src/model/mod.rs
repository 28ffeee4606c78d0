pub mod filter_settings;
