//! The winning deployment as files.
