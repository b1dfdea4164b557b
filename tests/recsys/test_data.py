"""Reading orders and catalogs: every rejection reason counted, ids as strings, clear errors."""

import gzip

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys.data import ItemExclusion, parse_column_map, read_catalog, read_orders
from recsys.exceptions import ConfigError, DataError, StrictModeError

HEADER = "customer_id,order_id,item_id,quantity,unit_price,timestamp\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_every_rejection_reason_is_counted(tmp_path):
    path = write(tmp_path, "orders.csv", HEADER + "\n".join([
        "c1,o1,i1,2,1.5,2024-01-01T10:00:00",   # ok
        "c1,o1,i2,1,2.0,2024-01-01 10:00:00",   # ok (space separator)
        "c2,,i1,1,1.0,2024-01-02",              # missing order id
        "c2,o2,,1,1.0,2024-01-02",              # missing item id
        "c2,o2,i1,abc,1.0,2024-01-02",          # unparsable quantity
        "c2,o2,i1,-3,1.0,2024-01-02",           # return
        "c2,o2,i1,0,1.0,2024-01-02",            # zero quantity
        "c2,o2,i3,1,x1,2024-01-02",             # unparsable price
        "c2,o2,i3,1,-1,2024-01-02",             # negative price
        "c2,o2,i3,1,1.0,yesterday",             # unparsable timestamp
        "c2,o2,i3,1,1.0,",                      # missing timestamp
        ",o3,i2,1,1.0,2024-01-03T00:00:00Z",    # no customer: kept for baskets
        "c3,o4,POST,1,1.0,2024-01-03",          # not a product
    ]) + "\n")
    inter, report = read_orders(path, exclude=ItemExclusion("^POST$"))
    assert report.rows_read == 13
    assert report.rejected == {
        "missing_order_id": 1, "missing_item_id": 1, "unparsable_quantity": 1,
        "non_positive_quantity": 2, "unparsable_unit_price": 1, "negative_unit_price": 1,
        "unparsable_timestamp": 1, "missing_timestamp": 1, "not_a_product": 1,
    }
    assert report.rows_used == 3
    assert report.rows_used + report.rows_rejected == report.rows_read
    assert report.notes["rows_without_customer_used_for_baskets_only"] == 1
    assert report.excluded_items == 1
    assert list(inter.items.ids) == ["i1", "i2"]
    assert inter.n_lines == 3
    assert (inter.customer_idx == -1).sum() == 1
    # The report's text names every reason.
    text = report.format()
    for reason in report.rejected:
        assert reason in text


def test_strict_turns_a_rejection_into_a_failure(tmp_path):
    path = write(tmp_path, "orders.csv", HEADER + "c1,o1,i1,1,1,2024-01-01\nc1,o1,i2,-1,1,2024-01-01\n")
    with pytest.raises(StrictModeError, match="non_positive_quantity=1"):
        read_orders(path, strict=True)
    _, report = read_orders(path, strict=False)
    assert report.rows_used == 1


def test_float_ids_become_integer_strings(tmp_path):
    table = pa.table({
        "CustomerID": pa.array([17850.0, None, 13047.0]),
        "InvoiceNo": pa.array(["536365", "536366", "536367"]),
        "StockCode": pa.array([85123, 71053, 85123]),
    })
    path = str(tmp_path / "o.parquet")
    pq.write_table(table, path)
    inter, report = read_orders(path, parse_column_map(
        "customer_id=CustomerID,order_id=InvoiceNo,item_id=StockCode"))
    assert list(inter.customers.ids) == ["13047", "17850"]
    assert list(inter.items.ids) == ["71053", "85123"]
    # The same from a CSV exported from a float column.
    csv_path = write(tmp_path, "o.csv", "customer_id,order_id,item_id\n17850.0,1,A\n13047.0,2,B\n")
    inter, _ = read_orders(csv_path)
    assert list(inter.customers.ids) == ["13047", "17850"]


def test_gzip_csv_and_column_mapping(tmp_path):
    path = tmp_path / "o.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("Cust,Inv,Sku\nx,1,a\nx,1,b\ny,2,a\n")
    inter, report = read_orders(str(path), {"customer_id": "Cust", "order_id": "Inv", "item_id": "Sku"})
    assert report.rows_used == 3
    assert len(inter.orders) == 2 and len(inter.customers) == 2
    assert report.unused_columns == []


def test_missing_required_column_names_file_and_column(tmp_path):
    path = write(tmp_path, "o.csv", "customer_id,order_id\nc,1\n")
    with pytest.raises(DataError) as err:
        read_orders(path)
    assert "o.csv" in str(err.value) and "'item_id'" in str(err.value)


def test_mapped_column_absent_is_an_error(tmp_path):
    path = write(tmp_path, "o.csv", "customer_id,order_id,item_id\nc,1,a\n")
    with pytest.raises(DataError, match="StockCode"):
        read_orders(path, {"item_id": "StockCode"})


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_orders(str(tmp_path / "absent.csv"))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="bad.parquet"):
        read_orders(str(bad))
    with pytest.raises(DataError, match="unknown file type"):
        read_orders(write(tmp_path, "o.xlsx", "x"))


def test_bad_column_map_and_regex():
    with pytest.raises(ConfigError, match="name=SourceColumn"):
        parse_column_map("customer_id")
    with pytest.raises(ConfigError, match="regular expression"):
        ItemExclusion("([unclosed")


def test_exclusion_from_a_file_of_ids(tmp_path):
    ids = write(tmp_path, "ids.txt", "POST\nM\n")
    orders = write(tmp_path, "o.csv", "order_id,item_id\n1,POST\n1,a\n2,M\n2,b\n")
    inter, report = read_orders(orders, exclude=ItemExclusion(ids))
    assert report.rejected == {"not_a_product": 2}
    assert list(inter.items.ids) == ["a", "b"]


def test_no_customer_column_means_each_order_is_a_customer(tmp_path):
    path = write(tmp_path, "o.csv", "order_id,item_id\n1,a\n1,b\n2,a\n")
    inter, _ = read_orders(path)
    assert inter.customer_is_order
    assert inter.customer_items().shape == (2, 2)


def test_timestamps_with_zones_are_utc(tmp_path):
    path = write(tmp_path, "o.csv", "order_id,item_id,timestamp\n1,a,2024-01-01T12:00:00+02:00\n"
                 "2,a,2024-01-01T10:00:00Z\n3,a,2024-01-01T10:00:00\n")
    inter, report = read_orders(path)
    assert report.rows_used == 3
    assert len(set(inter.timestamp.tolist())) == 1


def test_catalog_fields_and_duplicates(tmp_path):
    path = write(tmp_path, "cat.csv", "item_id,name,category,price,in_stock,recommendable,brand\n"
                 "a,Alpha,cups,1.5,true,true,acme\nb,Beta,cups,abc,no,false,acme\n"
                 "a,Alpha2,cups,2.0,yes,true,zed\n,NoId,cups,1,true,true,x\n")
    catalog, report = read_catalog(path)
    assert report.rejected == {"missing_item_id": 1, "unparsable_price": 1, "duplicate_item_id": 1}
    assert list(catalog.ids) == ["b", "a"] or sorted(catalog.ids) == ["a", "b"]
    by_id = dict(zip(catalog.ids, range(len(catalog.ids)), strict=True))
    assert catalog.name[by_id["a"]] == "Alpha2"  # the later row wins
    assert catalog.price[by_id["a"]] == 2.0
    assert np.isnan(catalog.price[by_id["b"]])
    assert not catalog.in_stock[by_id["b"]] and not catalog.recommendable[by_id["b"]]
    assert catalog.extra["brand"][by_id["a"]] == "zed"
