//! Collects every diagnostic of one derive, so the user sees all bad attributes at once rather
//! than one per build (serde's `Ctxt`, without the drop bomb).

pub(crate) struct Errors {
    first: Option<syn::Error>,
}

impl Errors {
    pub(crate) fn new() -> Self {
        Self { first: None }
    }

    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.first {
            Some(first) => first.combine(error),
            None => self.first = Some(error),
        }
    }

    /// Keeps `result`'s value, or records its error.
    pub(crate) fn ok<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    /// All the errors, combined, if there were any.
    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        match self.first {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}
