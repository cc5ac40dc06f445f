//! Filling the store by a list: paginated, with client-go's choice of version and page size.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::options::DEFAULT_PAGE_SIZE;
use super::{Reflector, ReflectorError, is_unset, or_cancel};
use crate::object::{Object, ResourceVersion};
use crate::source::{ListOptions, ObjectList, SourceError, SourceErrorKind};

impl<T: Object> Reflector<T> {
    fn relist_resource_version(&self) -> Option<ResourceVersion> {
        let state = self.state();
        if state.unavailable {
            None
        } else {
            Some(state.last_sync.clone().unwrap_or_else(|| "0".into()))
        }
    }

    fn page_size_for(&self, rv: Option<&ResourceVersion>) -> u32 {
        match self.inner.options.page_size {
            Some(size) => size,
            None if self.state().paginated_result => DEFAULT_PAGE_SIZE,
            None if !is_unset(rv) => 0,
            None => DEFAULT_PAGE_SIZE,
        }
    }

    /// Lists into the store. `Ok(false)` when cancelled.
    pub(super) async fn list(&self, cancel: &CancellationToken) -> Result<bool, ReflectorError> {
        let rv = self.relist_resource_version();
        let result = match or_cancel(cancel, self.paged_list(rv.clone())).await {
            None => return Ok(false),
            Some(result) => result,
        };
        let (list, paginated) = match result {
            Ok(out) => out,
            Err(error) if error.is_expired() => {
                // The version is gone or in the future: ask for the latest state at once.
                debug!(reflector = %self.inner.name, %error, "list version unavailable, listing the latest");
                self.state().unavailable = true;
                match or_cancel(cancel, self.paged_list(None)).await {
                    None => return Ok(false),
                    Some(result) => result.map_err(ReflectorError::List)?,
                }
            }
            Err(error) => return Err(ReflectorError::List(error)),
        };
        {
            let mut state = self.state();
            if paginated && rv.as_ref().is_some_and(|rv| rv.as_str() == "0") {
                state.paginated_result = true;
            }
            state.unavailable = false;
        }
        let ObjectList {
            items,
            resource_version,
            skipped,
            ..
        } = list;
        for error in skipped {
            self.report(&ReflectorError::Decode(error));
        }
        let items = self.valid(items);
        if let Err(error) = self.inner.store.replace(items, resource_version.clone()) {
            self.report(&ReflectorError::Store(error));
        }
        self.inner.counters.lists.fetch_add(1, Ordering::Relaxed);
        if let Some(rv) = resource_version {
            self.set_last_sync(rv);
        }
        Ok(true)
    }

    /// A list, paginated by `page_size` (client-go's pager): the pages are merged; a
    /// continuation page that expired makes one full, unpaginated list at `rv`. Also tells
    /// whether the result came in several pages.
    async fn paged_list(
        &self,
        rv: Option<ResourceVersion>,
    ) -> Result<(ObjectList<T>, bool), SourceError> {
        let limit = Some(self.page_size_for(rv.as_ref())).filter(|l| *l > 0);
        let first = self
            .inner
            .source
            .list(ListOptions {
                resource_version: rv.clone(),
                limit,
                ..ListOptions::default()
            })
            .await?;
        let mut token = first.continue_token.clone().filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok((first, false));
        }
        let mut merged = first;
        while let Some(t) = token.take() {
            let page = self
                .inner
                .source
                .list(ListOptions {
                    limit,
                    continue_token: Some(t),
                    ..ListOptions::default()
                })
                .await;
            match page {
                Ok(page) => {
                    merged.items.extend(page.items);
                    merged.skipped.extend(page.skipped);
                    token = page.continue_token.filter(|t| !t.is_empty());
                }
                Err(error) if error.kind == SourceErrorKind::Expired => {
                    debug!(reflector = %self.inner.name, %error, "continue token expired, listing in full");
                    let full = self
                        .inner
                        .source
                        .list(ListOptions {
                            resource_version: rv,
                            ..ListOptions::default()
                        })
                        .await?;
                    return Ok((full, false));
                }
                Err(error) => return Err(error),
            }
        }
        merged.continue_token = None;
        Ok((merged, true))
    }

    pub(super) fn valid(&self, items: Vec<Arc<T>>) -> Vec<Arc<T>> {
        if self.inner.validate.is_none() {
            return items;
        }
        items.into_iter().filter(|o| self.check(o)).collect()
    }

    /// Whether `obj` passes validation; reports it when not.
    pub(super) fn check(&self, obj: &T) -> bool {
        let Some(validate) = &self.inner.validate else {
            return true;
        };
        match validate(obj) {
            Ok(()) => true,
            Err(reason) => {
                self.report(&ReflectorError::InvalidObject {
                    key: format!("{:?}", obj.key()),
                    reason,
                });
                false
            }
        }
    }
}
