// The binary tree behind the tree algorithms (tree.cc), exposed for the cost model.
#pragma once

#include <vector>

namespace ciuic::coll {

// Node `label` of the binary tree over labels 0..m-1: label 0 is the root with one child
// (the largest power of two below m); a label's level is its lowest set bit.
struct TreeNode {
  int parent = -1;
  std::vector<int> children;  // at most two
};
TreeNode binary_tree_node(int label, int m);

// Tree 0 labels index i as i; tree 1 mirrors (m even) or shifts by one (m odd), so that
// tree 0's leaves are tree 1's interior nodes. tree_index inverts tree_label.
int tree_label(int which, int index, int m);
int tree_index(int which, int label, int m);

}  // namespace ciuic::coll
