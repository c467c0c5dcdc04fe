//! Ferry agent library.
