//! The demo's data model: owners, accounts and transactions, generated deterministically at start-up.
//!
//! A fixed-seed LCG (no randomness crate) builds the same data set on every run; it lives in an
//! `Arc<RwLock<..>>` store so `POST /accounts/{id}/transactions` can add to it.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::dates::{fmt_date, now_secs};

/// Generated transactions per account.
const TXNS_PER_ACCOUNT: usize = 300;
/// The generated history ends on 2025-06-30T18:00:00Z and spans 90 days.
pub(super) const HISTORY_END: i64 = 1_751_306_400;
const HISTORY_SPAN: i64 = 90 * 86_400;

/// Shared server state: the mutable store plus the boot time.
pub(super) struct State {
    store: RwLock<Store>,
    pub(super) boot_secs: u64,
}

impl State {
    pub(super) fn new() -> Self {
        let boot_secs = now_secs();
        Self {
            store: RwLock::new(Store::generate(boot_secs)),
            boot_secs,
        }
    }

    pub(super) fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|e| e.into_inner())
    }
}

pub(super) struct Store {
    pub(super) owners: Vec<Owner>,
    pub(super) accounts: Vec<Account>,
    /// Unix seconds of the last data change (boot time, then every POST).
    pub(super) last_modified: u64,
}

pub(super) struct Address {
    pub(super) kind: &'static str,
    pub(super) street: &'static str,
    pub(super) city: &'static str,
    pub(super) postal_code: &'static str,
    pub(super) country: &'static str,
}

pub(super) struct Owner {
    pub(super) id: String,
    pub(super) title: &'static str,
    pub(super) first_name: &'static str,
    pub(super) last_name: &'static str,
    pub(super) email: String,
    pub(super) customer_since: String,
    pub(super) addresses: Vec<Address>,
}

pub(super) struct Account {
    pub(super) id: String,
    pub(super) owner_id: String,
    pub(super) kind: &'static str,
    pub(super) name: String,
    pub(super) iban: String,
    pub(super) opened_on: String,
    pub(super) balance_cents: i64,
    /// Oldest first; lists are served newest first.
    pub(super) transactions: Vec<Txn>,
}

pub(super) struct Merchant {
    pub(super) name: &'static str,
    pub(super) category: &'static str,
    pub(super) mcc: &'static str,
    pub(super) city: &'static str,
}

pub(super) struct Txn {
    pub(super) id: String,
    pub(super) account_id: String,
    pub(super) timestamp: i64,
    pub(super) label: String,
    pub(super) amount_cents: i64,
    pub(super) balance_after_cents: i64,
    pub(super) channel: &'static str,
    pub(super) category: String,
    pub(super) merchant: Option<&'static Merchant>,
    pub(super) reference: String,
}

#[rustfmt::skip]
const MERCHANTS: &[Merchant] = &[
    Merchant { name: "Greenleaf Grocery", category: "groceries", mcc: "5411", city: "Lyon" },
    Merchant { name: "Le Petit Fournil", category: "groceries", mcc: "5462", city: "Paris" },
    Merchant { name: "Metro Transit Authority", category: "transport", mcc: "4111", city: "Paris" },
    Merchant { name: "Cafe des Arts", category: "restaurants", mcc: "5812", city: "Bordeaux" },
    Merchant { name: "Northwind Books", category: "shopping", mcc: "5942", city: "Nantes" },
    Merchant { name: "Stellar Cinema", category: "entertainment", mcc: "7832", city: "Lille" },
    Merchant { name: "Volt Energy", category: "utilities", mcc: "4900", city: "Paris" },
    Merchant { name: "Pharmacie Centrale", category: "health", mcc: "5912", city: "Toulouse" },
    Merchant { name: "Atlas Fuel Station", category: "transport", mcc: "5541", city: "Marseille" },
    Merchant { name: "Bluebird Telecom", category: "utilities", mcc: "4814", city: "Paris" },
    Merchant { name: "Sunrise Fitness Club", category: "health", mcc: "7997", city: "Nice" },
    Merchant { name: "Harbor Hardware", category: "home", mcc: "5251", city: "Brest" },
    Merchant { name: "Pixel Electronics", category: "shopping", mcc: "5732", city: "Rennes" },
    Merchant { name: "Trattoria Roma", category: "restaurants", mcc: "5812", city: "Strasbourg" },
    Merchant { name: "SkyHop Airlines", category: "travel", mcc: "4511", city: "Roissy" },
    Merchant { name: "Hotel du Lac", category: "travel", mcc: "7011", city: "Annecy" },
];

/// Deterministic 64-bit linear congruential generator (Knuth's MMIX constants).
pub(super) struct Lcg(u64);

impl Lcg {
    pub(super) fn new(seed: u64) -> Self {
        let mut rng = Lcg(seed ^ 0x9E37_79B9_7F4A_7C15);
        rng.next_u64();
        rng
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // Output mixing: the high bits of an LCG are the good ones.
        let x = self.0;
        x ^ (x >> 29)
    }

    /// Uniform-ish integer in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo + 1).max(1) as u64;
        lo + ((self.next_u64() >> 16) % span) as i64
    }
}

impl Store {
    pub(super) fn generate(boot_secs: u64) -> Self {
        let mut rng = Lcg::new(0x0BA4_C0DE);
        let people: [(&str, &str, &str, &str, &str, &str, &str); 4] = [
            (
                "Mr",
                "Arthur",
                "Dent",
                "155 Country Lane",
                "Cottington",
                "CT1 4DW",
                "GB",
            ),
            (
                "Ms",
                "Tricia",
                "McMillan",
                "12 Islington Row",
                "London",
                "N1 8QH",
                "GB",
            ),
            (
                "Dr",
                "Ford",
                "Prefect",
                "7 Rue de la Paix",
                "Paris",
                "75002",
                "FR",
            ),
            (
                "Mrs",
                "Fenchurch",
                "Pollard",
                "42 Quai des Chartrons",
                "Bordeaux",
                "33000",
                "FR",
            ),
        ];
        let mut owners = Vec::new();
        let mut accounts = Vec::new();
        for (i, (title, first, last, street, city, postal, country)) in
            people.into_iter().enumerate()
        {
            let owner_id = format!("O{}", i + 1);
            let since = HISTORY_END - rng.range(3 * 365, 15 * 365) * 86_400;
            owners.push(Owner {
                id: owner_id.clone(),
                title,
                first_name: first,
                last_name: last,
                email: format!(
                    "{}.{}@example.com",
                    first.to_lowercase(),
                    last.to_lowercase()
                ),
                customer_since: fmt_date(since),
                addresses: vec![
                    Address {
                        kind: "home",
                        street,
                        city,
                        postal_code: postal,
                        country,
                    },
                    Address {
                        kind: "work",
                        street: "1 Galaxy Business Park",
                        city: "Lyon",
                        postal_code: "69003",
                        country: "FR",
                    },
                ],
            });
            for (j, kind) in ["checking", "savings"].into_iter().enumerate() {
                let n = i * 2 + j + 1;
                let id = format!("A{n}");
                let opened = since + rng.range(0, 400) * 86_400;
                let transactions = generate_transactions(&id, kind, &mut rng);
                let balance_cents = transactions.last().map_or(0, |t| t.balance_after_cents);
                accounts.push(Account {
                    name: format!("{first} {last} - {kind}"),
                    iban: format!(
                        "FR76 3000 4{:03} {:04} {:04} {:04} {:03}",
                        n,
                        rng.range(0, 9999),
                        rng.range(0, 9999),
                        rng.range(0, 9999),
                        rng.range(0, 999)
                    ),
                    id,
                    owner_id: owner_id.clone(),
                    kind,
                    opened_on: fmt_date(opened),
                    balance_cents,
                    transactions,
                });
            }
        }
        Store {
            owners,
            accounts,
            last_modified: boot_secs,
        }
    }

    pub(super) fn owner(&self, id: &str) -> Option<&Owner> {
        self.owners.iter().find(|o| o.id == id)
    }

    pub(super) fn account(&self, id: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.id == id)
    }
}

fn generate_transactions(account_id: &str, kind: &str, rng: &mut Lcg) -> Vec<Txn> {
    let start = HISTORY_END - HISTORY_SPAN;
    let step = HISTORY_SPAN / TXNS_PER_ACCOUNT as i64;
    let mut drafts = Vec::with_capacity(TXNS_PER_ACCOUNT);
    for i in 0..TXNS_PER_ACCOUNT {
        let timestamp = start + i as i64 * step + rng.range(0, step - 1);
        let (label, amount_cents, channel, category, merchant) = if i % 30 == 7 {
            let amount = if kind == "checking" {
                rng.range(250_000, 350_000)
            } else {
                rng.range(20_000, 60_000)
            };
            let label = if kind == "checking" {
                "SALARY TRANSFER GALAXY PUBLISHING LTD".to_string()
            } else {
                "STANDING ORDER FROM CHECKING".to_string()
            };
            (label, amount, "transfer", "income".to_string(), None)
        } else if kind == "savings" && i % 10 == 3 {
            let amount = rng.range(100, 2_500);
            (
                "MONTHLY INTEREST CREDIT".to_string(),
                amount,
                "interest",
                "income".to_string(),
                None,
            )
        } else {
            let m = &MERCHANTS[(rng.next_u64() >> 40) as usize % MERCHANTS.len()];
            let amount = -rng.range(150, if kind == "savings" { 4_000 } else { 15_000 });
            let label = format!(
                "CARD PAYMENT {} {}",
                m.name.to_uppercase(),
                m.city.to_uppercase()
            );
            (label, amount, "card", m.category.to_string(), Some(m))
        };
        drafts.push(Txn {
            id: format!("T-{account_id}-{:04}", i + 1),
            account_id: account_id.to_string(),
            timestamp,
            label,
            amount_cents,
            balance_after_cents: 0,
            channel,
            category,
            merchant,
            reference: format!(
                "RF{:02}{:010}{:06}",
                rng.range(10, 99),
                rng.range(0, 9_999_999_999),
                i + 1
            ),
        });
    }
    // Choose an opening balance so the running balance ends at a plausible positive value.
    let total: i64 = drafts.iter().map(|t| t.amount_cents).sum();
    let target = if kind == "checking" {
        rng.range(80_000, 600_000)
    } else {
        rng.range(1_000_000, 4_000_000)
    };
    let mut running = target - total;
    for t in &mut drafts {
        running += t.amount_cents;
        t.balance_after_cents = running;
    }
    drafts
}
