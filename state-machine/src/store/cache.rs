//! A bounded cache of decoded pages.
//!
//! Two generations: lookups hit `hot` or promote from `cold`; when `hot`
//! reaches half the capacity it becomes `cold` and the old `cold` is
//! dropped. Pages used in every block (the upper levels) stay hot; at most
//! `capacity` pages are held. The maps are only probed, never iterated, so
//! their order cannot leak into any result.

use std::collections::HashMap;
use std::sync::Arc;

use super::page::{NodeKey, Page};

#[derive(Debug)]
pub(crate) struct PageCache {
    generation_max: usize,
    hot: HashMap<NodeKey, Arc<Page>>,
    cold: HashMap<NodeKey, Arc<Page>>,
}

impl PageCache {
    pub fn new(capacity: usize) -> PageCache {
        PageCache {
            generation_max: capacity / 2,
            hot: HashMap::new(),
            cold: HashMap::new(),
        }
    }

    pub fn get(&mut self, key: &NodeKey) -> Option<Arc<Page>> {
        if let Some(page) = self.hot.get(key) {
            return Some(Arc::clone(page));
        }
        let page = self.cold.remove(key)?;
        self.insert(*key, Arc::clone(&page));
        Some(page)
    }

    pub fn insert(&mut self, key: NodeKey, page: Arc<Page>) {
        if self.generation_max == 0 {
            return;
        }
        if self.hot.len() >= self.generation_max {
            self.cold = std::mem::take(&mut self.hot);
        }
        self.hot.insert(key, page);
        assert!(self.hot.len() <= self.generation_max);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.hot.len() + self.cold.len()
    }
}
