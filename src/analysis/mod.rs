//! Facts about the tensors of a model that the relevance rules need: element types and shapes
//! (from tract's inference, batch axis symbolic), signs, and the roles of nodes.

mod facts;
mod layout;
mod roles;
mod signs;

pub use facts::{infer_facts, input_sample_dims, Dim, Fact, Facts};
pub use layout::{channel_axis, image_layout, model_layout, single_input_layout};
pub use roles::{embedding_of, find_roles, Embedding, Roles};
pub use signs::{common as common_sign, infer_signs, of_first as first_input_sign, Sign, Signs};
