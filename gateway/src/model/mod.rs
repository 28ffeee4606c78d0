pub mod plugin_chain;
