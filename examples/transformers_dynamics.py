"""Learning dynamics inside a Hugging Face Trainer: a tiny BERT (random weights, built from a config, no
download) on a synthetic text task, with a data map written in the dataset-cartography format.

Run: python examples/transformers_dynamics.py   (needs `pip install 'forgetting[transformers]'`; about
20 s on 2 CPU cores). Writes runs/transformers-example/.
"""

import torch
from torch.utils.data import Dataset
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from forgetting.cartography import CartographyWriter, read_cartography
from forgetting.integrations.transformers import ForgettingTrainerCallback


def texts(n, seed, vocab=40, length=12):
    """Token sequences labelled by an XOR of the first two tokens' halves of the vocabulary."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (n, length), generator=g)
    upper = ids >= (vocab + 3) // 2
    labels = (upper[:, 0] ^ upper[:, 1]).long()
    return [{"input_ids": ids[i], "attention_mask": torch.ones(length, dtype=torch.long), "labels": labels[i]}
            for i in range(n)]


class Items(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


torch.manual_seed(0)
model = BertForSequenceClassification(BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=2, intermediate_size=64,
                                                 max_position_embeddings=12, num_labels=2))
train = texts(192, seed=1)

# Observe the training set itself (eval mode, after every epoch): counts and a cartography data map
data_map = CartographyWriter("runs/transformers-example", n=len(train), overwrite=True)
callback = ForgettingTrainerCallback(train, targets="source", cartography=data_map)
args = TrainingArguments(output_dir="runs/transformers-example/trainer", num_train_epochs=5,
                         per_device_train_batch_size=16, learning_rate=3e-3, report_to=[],
                         save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True)
Trainer(model=model, args=args, train_dataset=Items(train), callbacks=[callback]).train()

tracker = callback.tracker
print(f"forgotten at least once: {int((tracker.forgetting > 0).sum())} of {tracker.n}; "
      f"never learned: {int(tracker.never_learned.sum())}")
tracker.to_csv("runs/transformers-example/train.csv")  # one row per sample, every counter
first = next(iter(read_cartography("runs/transformers-example").values()))  # what data-map tools read
print("epochs in the data map:", len(first["logits"]))
