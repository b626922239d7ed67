//! (to be written)

use axum::Router;

use crate::PortalState;

pub fn routes(r: Router<PortalState>) -> Router<PortalState> {
    r
}
