//! JSON representations of the demo's owners, accounts and transactions.

use serde_json::{json, Value};

use super::dates::{fmt_date, fmt_rfc3339};
use super::model::{Account, Owner, Store, Txn};

fn money(cents: i64) -> Value {
    serde_json::Number::from_f64(cents as f64 / 100.0).map_or(Value::Null, Value::Number)
}

pub(super) fn owner_summary(o: &Owner) -> Value {
    json!({
        "id": o.id,
        "title": o.title,
        "firstName": o.first_name,
        "lastName": o.last_name,
        "_links": {
            "self": { "href": format!("/owners/{}", o.id) },
            "accounts": { "href": format!("/owners/{}/accounts", o.id) },
        },
    })
}

pub(super) fn owner_full(o: &Owner, store: &Store) -> Value {
    let addresses: Vec<Value> = o
        .addresses
        .iter()
        .map(|a| {
            json!({
                "type": a.kind,
                "street": a.street,
                "city": a.city,
                "postalCode": a.postal_code,
                "country": a.country,
            })
        })
        .collect();
    let accounts: Vec<&str> = store
        .accounts
        .iter()
        .filter(|a| a.owner_id == o.id)
        .map(|a| a.id.as_str())
        .collect();
    json!({
        "id": o.id,
        "title": o.title,
        "firstName": o.first_name,
        "lastName": o.last_name,
        "email": o.email,
        "customerSince": o.customer_since,
        "addresses": addresses,
        "accounts": accounts,
        "_links": {
            "self": { "href": format!("/owners/{}", o.id) },
            "accounts": { "href": format!("/owners/{}/accounts", o.id) },
        },
    })
}

pub(super) fn account_summary(a: &Account) -> Value {
    json!({
        "id": a.id,
        "ownerId": a.owner_id,
        "type": a.kind,
        "balance": money(a.balance_cents),
        "currency": "EUR",
        "_links": {
            "self": { "href": format!("/accounts/{}", a.id) },
            "transactions": { "href": format!("/accounts/{}/transactions", a.id) },
        },
    })
}

pub(super) fn account_full(a: &Account) -> Value {
    json!({
        "id": a.id,
        "ownerId": a.owner_id,
        "type": a.kind,
        "name": a.name,
        "iban": a.iban,
        "currency": "EUR",
        "balance": money(a.balance_cents),
        "openedOn": a.opened_on,
        "transactionCount": a.transactions.len(),
        "_links": {
            "self": { "href": format!("/accounts/{}", a.id) },
            "owner": { "href": format!("/owners/{}", a.owner_id) },
            "transactions": { "href": format!("/accounts/{}/transactions", a.id) },
        },
    })
}

pub(super) fn txn_json(t: &Txn) -> Value {
    let merchant = t.merchant.map_or(Value::Null, |m| {
        json!({
            "name": m.name,
            "mcc": m.mcc,
            "city": m.city,
        })
    });
    json!({
        "id": t.id,
        "date": fmt_rfc3339(t.timestamp),
        "valueDate": fmt_date(t.timestamp + 86_400),
        "label": t.label,
        "amount": money(t.amount_cents),
        "type": if t.amount_cents < 0 { "debit" } else { "credit" },
        "status": "booked",
        "channel": t.channel,
        "category": t.category,
        "merchant": merchant,
        "reference": t.reference,
        "balanceAfter": money(t.balance_after_cents),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_first_page_is_about_32_kib() {
        let store = Store::generate(0);
        for a in &store.accounts {
            let items: Vec<Value> = a
                .transactions
                .iter()
                .rev()
                .take(100)
                .map(txn_json)
                .collect();
            let len = serde_json::to_vec(&items).map_or(0, |v| v.len());
            assert!((30 * 1024..=34 * 1024).contains(&len), "{}: {len}", a.id);
        }
    }
}
